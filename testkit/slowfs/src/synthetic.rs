//! --synthetic: a deterministic generated tree served from memory instead of a
//! backing directory, shaped like testkit/mktree.py (the reference store: 16 M
//! files in 510 k directories), so a scanner can be measured at 16 M or 100 M
//! files on a machine that cannot hold that many inodes.
//!
//! Only the directory table is held: parent, first child and file count per
//! directory (plus, with churn, the added-file count and one bit): 12-16
//! bytes a directory. A file's name and attributes are recomputed on every
//! request from (seed, directory, index) with splitmix64, so memory does not
//! grow with the number of files. Node ids need no table either: directory d
//! is d + 1 (the root, d = 0, is node 1) and file i of directory d is
//! (d + 1) << 32 | i. LOOKUP parses the index back out of the name and
//! regenerates that one name to check it (O(1) in a directory of any size);
//! READDIR cookies are slot numbers (".", "..", sub-directories, then files by
//! index), so READDIR resumes anywhere in a 2 M-entry directory without state.
//!
//! churn=C is the next night's version of the same tree: each base file is
//! removed with probability C, each remaining one changed (new size, mtime in
//! the day after END) with probability C, and as many new files as were
//! removed are added (indices after the base ones, so new names) to
//! directories drawn in proportion to their file count. Every decision hashes
//! (seed, directory, index), so churn=0 and churn=C differ by exactly the
//! counts --summary reports.
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, Request,
};

use crate::{Op, Shared};

// ------------------------------------------------ the shape (from mktree.py)
const END: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const SPAN: i64 = 315_576_000; // ten years: int(10 * 365.25 * 86400)
const START: i64 = END - SPAN;
const NS: u64 = 1_000_000_000;
const END_NS: u64 = END as u64 * NS;
const START_NS: u64 = START as u64 * NS;
const DAY_NS: u64 = 86_400 * NS;
const FILES_PER_DIR_MEAN: f64 = 31.4; // 16 M files / 510 k dirs
const MAX_SIZE: u64 = 1 << 40;
const DEPTH_W: [f64; 8] = [0.0003, 0.005, 0.03, 0.10, 0.22, 0.27, 0.22, 0.15];
const UIDS: [u32; 20] = [
    0, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
    1015, 1016, 1017, 1018,
];
const GIDS: [u32; 5] = [100, 1000, 2000, 2001, 2002];

/// Size classes: (median bytes, log-sigma), indexed by EXT_MIX's third field.
const SIZE: [(f64, f64); 15] = [
    (2e6, 2.0),   // 0 dat
    (50e6, 1.5),  // 1 srh5
    (20e6, 2.0),  // 2 h5
    (50e3, 2.0),  // 3 csv
    (20e3, 2.5),  // 4 log
    (4e3, 2.0),   // 5 txt
    (6e3, 1.0),   // 6 py
    (200e3, 1.5), // 7 ipynb
    (150e3, 1.0), // 8 img
    (3e3, 2.0),   // 9 json
    (30e6, 2.0),  // 10 parquet
    (100e6, 2.0), // 11 arch
    (8e6, 2.0),   // 12 npy
    (2e3, 1.5),   // 13 small
    (10e3, 3.0),  // 14 noext
];
/// (suffix, weight x 10, size class); mktree's mix, incl. upper case and multi-dot.
const EXT_MIX: [(&str, u32, u8); 31] = [
    (".dat", 120, 0),
    (".DAT", 30, 0),
    (".srh5", 80, 1),
    (".h5", 70, 2),
    (".H5", 5, 2),
    (".hdf5", 15, 2),
    (".csv", 70, 3),
    (".CSV", 10, 3),
    (".log", 80, 4),
    (".txt", 60, 5),
    (".TXT", 10, 5),
    (".py", 50, 6),
    (".ipynb", 25, 7),
    (".png", 50, 8),
    (".PNG", 10, 8),
    (".Png", 2, 8),
    (".jpg", 15, 8),
    (".JPG", 5, 8),
    (".json", 50, 9),
    (".parquet", 25, 10),
    (".tar.gz", 15, 11),
    (".TAR.GZ", 2, 11),
    (".gz", 10, 11),
    (".npy", 20, 12),
    (".yaml", 10, 13),
    (".md", 10, 13),
    (".sh", 10, 13),
    (".c", 5, 13),
    (".h", 5, 13),
    (".pkl", 8, 12),
    ("", 40, 14),
];
const NOEXT: usize = 30;
const EXT_CUM: [u32; 31] = {
    let mut c = [0; 31];
    let (mut s, mut i) = (0, 0);
    while i < 31 {
        s += EXT_MIX[i].1;
        c[i] = s;
        i += 1;
    }
    c
};
/// Dominant extension of a hot directory: .dat .srh5 .h5 .png .log .npy .DAT
const HOT_EXTS: [usize; 7] = [0, 2, 3, 13, 8, 23, 1];
const DIR_WORDS: [&[&str]; 5] = [
    &[
        "projects",
        "users",
        "scratch",
        "archive",
        "shared",
        "instruments",
        "software",
        "datasets",
        "Group Data",
        "backup",
    ],
    &[
        "proj", "alice", "bob", "team", "lab", "beamline", "cluster", "survey",
    ],
    &[
        "raw",
        "processed",
        "analysis",
        "results",
        "notebooks",
        "runs",
        "code",
        "Raw Data",
        "figures",
        "docs",
        "logs",
        "config",
    ],
    &[
        "run", "sample", "exp", "batch", "scan", "day", "session", "shot",
    ],
    &[
        "v", "out", "tmp", "part", "cycle", "frames", "detector", "chan",
    ],
];
const STEMS: [&str; 22] = [
    "frame", "shot", "data", "result", "img", "scan", "sample", "run", "out", "chunk", "part",
    "trace", "events", "spectrum", "model", "notes", "analysis", "Plot", "RAW", "calib", "metrics",
    "report",
];
/// Files 0..8 of a directory may take these names instead (when extension-less).
const SPECIAL_NOEXT: [&str; 8] = [
    "README",
    "Makefile",
    "LICENSE",
    "core.12345",
    ".gitignore",
    ".DS_Store",
    "Dockerfile",
    "NOTES",
];

// -------------------------------------------------------------- hashing
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64's finaliser: a fast bijective 64-bit mix.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 64-bit key for (a, b): every random stream starts from one.
#[inline]
fn key(a: u64, b: u64) -> u64 {
    mix(a ^ mix(b.wrapping_add(GOLDEN)))
}

/// splitmix64 generator.
struct Rng(u64);

impl Rng {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }
    /// uniform in [0, 1)
    #[inline]
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// uniform in [0, n)
    #[inline]
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
    fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + (hi.ln() - lo.ln()) * self.unit()).exp()
    }
    /// standard normal (Box-Muller)
    #[inline]
    fn gauss(&mut self) -> f64 {
        let u = 1.0 - self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
    }
    fn expo(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
    fn ext(&mut self) -> usize {
        let x = self.below(EXT_CUM[30] as u64) as u32;
        EXT_CUM.partition_point(|&c| c <= x)
    }
    fn zipf_uid(&mut self) -> u32 {
        // weights 1 / (i + 1)^1.1, as mktree
        const CUM: [f64; 20] = {
            // 1 / (i + 1)^1.1, precomputed (powf is not const)
            let w = [
                1.0, 0.466516, 0.298653, 0.217638, 0.170268, 0.139326, 0.117596, 0.101532,
                0.089194, 0.079433, 0.071527, 0.064998, 0.059520, 0.054860, 0.050851, 0.047366,
                0.044310, 0.041610, 0.039208, 0.037057,
            ];
            let mut c = [0.0; 20];
            let (mut s, mut i) = (0.0, 0);
            while i < 20 {
                s += w[i];
                c[i] = s;
                i += 1;
            }
            c
        };
        let x = self.unit() * CUM[19];
        UIDS[CUM.partition_point(|&c| c <= x).min(19)]
    }
    /// mktree's _pick_time: around the directory's centre, clamped, with ns.
    fn time(&mut self, center: f64, spread: f64) -> u64 {
        let t = (center + self.gauss() * spread).clamp(START as f64, (END - 1) as f64);
        t as u64 * NS + self.below(NS)
    }
}

/// (year, month, day) of a day number since 1970-01-01 (H. Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

/// mktree's extension rule: os.path.splitext (last dot, but not a dot-file's
/// leading dots), lower-cased by the caller.
fn ext_of(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&c| c == b'.') {
        Some(dot) if name[..dot].iter().any(|&c| c != b'.') => &name[dot..],
        _ => b"",
    }
}

// -------------------------------------------------------------- the spec
#[derive(Clone, Debug)]
pub struct Spec {
    pub files: u64,
    pub dirs: Option<u64>,
    pub seed: u64,
    pub churn: f64,
}

impl Spec {
    /// "files=N[,dirs=D][,seed=S][,churn=C]"; N and D take a k/M/G suffix.
    pub fn parse(s: &str) -> Result<Spec, String> {
        fn count(v: &str) -> Option<u64> {
            let (n, m) = match v.as_bytes().last()? {
                b'k' | b'K' => (&v[..v.len() - 1], 1_000),
                b'M' => (&v[..v.len() - 1], 1_000_000),
                b'G' => (&v[..v.len() - 1], 1_000_000_000),
                _ => (v, 1),
            };
            n.replace('_', "").parse::<u64>().ok()?.checked_mul(m)
        }
        let mut spec = Spec {
            files: u64::MAX,
            dirs: None,
            seed: 42,
            churn: 0.0,
        };
        for kv in s.split(',') {
            let (k, v) = kv
                .split_once('=')
                .ok_or(format!("--synthetic: {kv:?} is not KEY=VALUE"))?;
            let bad = || format!("--synthetic: bad {k} {v:?}");
            match k {
                "files" => spec.files = count(v).ok_or_else(bad)?,
                "dirs" => spec.dirs = Some(count(v).ok_or_else(bad)?),
                "seed" => spec.seed = v.parse().map_err(|_| bad())?,
                "churn" => {
                    let c = v.parse::<f64>().ok().filter(|c| (0.0..=1.0).contains(c));
                    spec.churn = c.ok_or_else(bad)?
                }
                _ => {
                    return Err(format!(
                        "--synthetic: unknown key {k:?} (files, dirs, seed, churn)"
                    ));
                }
            }
        }
        if spec.files == u64::MAX {
            return Err("--synthetic needs files=N".into());
        }
        // a directory's file indices (base + added) must fit the low 32 bits of a node id
        if spec.files > i32::MAX as u64 || spec.dirs.unwrap_or(0) >= u32::MAX as u64 / 2 {
            return Err("--synthetic: at most 2^31-1 files and 2^31 directories".into());
        }
        Ok(spec)
    }

    pub fn label(&self) -> String {
        let d = self.dirs.map_or(String::new(), |d| format!(",dirs={d}"));
        format!(
            "files={}{d},seed={},churn={}",
            self.files, self.seed, self.churn
        )
    }
}

// -------------------------------------------------------------- the tree
pub struct Tree {
    pub spec: Spec,
    /// parent of each directory (the root's is itself); children of a
    /// directory are contiguous, numbered level by level, in creation order
    parent: Vec<u32>,
    /// children of d are first_child[d]..first_child[d + 1]
    first_child: Vec<u32>,
    /// base files of d: indices 0..nfiles[d]
    nfiles: Vec<u32>,
    /// churn: new files of d, indices nfiles[d]..nfiles[d] + added[d] (empty without churn)
    added: Vec<u32>,
    /// churn: directories whose listing changed (bit set); they get a new mtime
    touched: Vec<u64>,
    /// first directory of each depth 0..=8, then the directory count
    level: [u32; 10],
    hot: Vec<u32>,
    /// churn threshold: a hash below it removes (or changes) a file
    cut: u64,
    k_dname: u64,
    k_dmeta: u64,
    k_dtime: u64,
    k_files: u64,
    k_rm: u64,
    k_ch: u64,
    k_new: u64,
}

/// Per-directory constants, recomputed from the seed when needed.
struct Dir {
    d: u32,
    uid: u32,
    gid: u32,
    center: f64,
    spread: f64,
    sub: std::ops::Range<u32>,
    nfiles: u32,
    nall: u32,
    dom: usize,
    pdom: f64,
    stem: usize,
    stem2: usize,
    tmpl: u8,
    width: usize,
    date: [u8; 8],
    kfile: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Base,
    Changed,
    Added,
}

/// The random draws a file's name depends on; its attributes continue the stream.
struct Draw {
    rng: Rng,
    ext: usize,
    special: bool,
}

struct Meta {
    size: u64,
    uid: u32,
    gid: u32,
    atime: u64,
    mtime: u64,
    ctime: u64,
}

pub enum Node {
    Dir(u32),
    File(u32, u32),
}

fn dir_ino(d: u32) -> u64 {
    d as u64 + 1
}

fn file_ino(d: u32, i: u32) -> u64 {
    (d as u64 + 1) << 32 | i as u64
}

fn systime(ns: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

impl Tree {
    pub fn new(spec: Spec) -> Tree {
        let seed = spec.seed;
        let n = spec.files;
        let ndirs = spec
            .dirs
            .unwrap_or(((n as f64 / FILES_PER_DIR_MEAN).round() as u64).max(1));

        // -- directories per depth: mktree's weights, summing to exactly ndirs
        let tw: f64 = DEPTH_W.iter().sum();
        let mut per = [0u64; 8];
        let mut left = ndirs;
        for (p, w) in per.iter_mut().zip(DEPTH_W) {
            *p = ((ndirs as f64 * w / tw).round() as u64).max(1).min(left);
            left -= *p;
        }
        per[5] += left; // rounding shortfall: every level is non-empty then

        // -- preferential attachment, as mktree: a parent is drawn from its
        // level's urn, and goes back in once more for every child it gets
        let mut rng = Rng(key(seed, 1));
        let total = 1 + ndirs as usize;
        let mut par_old: Vec<u32> = Vec::with_capacity(total);
        par_old.push(0);
        let mut urn: Vec<u32> = vec![0];
        for &want in &per {
            let mut next = Vec::with_capacity(want as usize);
            for _ in 0..want {
                let p = urn[rng.below(urn.len() as u64) as usize];
                next.push(par_old.len() as u32);
                par_old.push(p);
                urn.push(p);
            }
            urn = next;
        }
        drop(urn);
        // renumber each level by (parent, creation order): children become
        // contiguous and a child's rank among its siblings is its creation rank
        let mut level = [0u32; 10];
        let mut new_of = vec![0u32; total];
        let mut parent = vec![0u32; total];
        let mut lo = 1usize;
        level[1] = 1;
        for (d, &want) in per.iter().enumerate() {
            let hi = lo + want as usize;
            let mut v: Vec<(u32, u32)> = (lo..hi)
                .map(|o| (new_of[par_old[o] as usize], o as u32))
                .collect();
            v.sort_unstable();
            for (j, (np, o)) in v.into_iter().enumerate() {
                new_of[o as usize] = (lo + j) as u32;
                parent[lo + j] = np;
            }
            lo = hi;
            level[d + 2] = hi as u32;
        }
        drop((par_old, new_of));
        let mut first_child = vec![0u32; total + 1];
        for &p in &parent[1..] {
            first_child[p as usize + 1] += 1;
        }
        first_child[0] = 1;
        for d in 0..total {
            first_child[d + 1] += first_child[d];
        }

        let mut t = Tree {
            spec,
            parent,
            first_child,
            nfiles: vec![0; total],
            added: Vec::new(),
            touched: Vec::new(),
            level,
            hot: Vec::new(),
            cut: 0,
            k_dname: key(seed, 2),
            k_dmeta: key(seed, 3),
            k_dtime: key(seed, 4),
            k_files: key(seed, 5),
            k_rm: key(seed, 6),
            k_ch: key(seed, 7),
            k_new: key(seed, 8),
        };
        t.plan_counts(key(seed, 9));
        if t.spec.churn > 0.0 {
            t.plan_churn(key(seed, 10));
        }
        t
    }

    /// Files per directory, as mktree's plan_counts: a few hot leaf
    /// directories (the biggest 1/16..1/8 of all files, the others
    /// 1/1600..1/16), the rest Lomax-distributed (inner directories get less).
    fn plan_counts(&mut self, k: u64) {
        let mut rng = Rng(k);
        let n = self.spec.files;
        let nd = self.ndirs();
        let cand: Vec<u32> = (1..nd)
            .filter(|&d| self.depth(d) >= 4 && self.nsub(d) == 0)
            .collect();
        let cand = if cand.is_empty() {
            (0..nd).collect()
        } else {
            cand
        };
        let nhot = if n >= 10_000 {
            8
        } else if n >= 500 {
            1
        } else {
            0
        };
        while self.hot.len() < nhot.min(cand.len()) {
            let c = cand[rng.below(cand.len() as u64) as usize];
            if !self.hot.contains(&c) {
                self.hot.push(c);
            }
        }
        let nf = n as f64;
        let mut sizes: Vec<f64> = (0..self.hot.len())
            .map(|j| match j {
                0 => rng.log_uniform(nf / 16.0, nf / 8.0),
                _ => rng.log_uniform(nf / 1600.0, nf / 16.0),
            })
            .collect();
        let sum: f64 = sizes.iter().sum();
        if sum > 0.45 * nf {
            sizes.iter_mut().for_each(|s| *s *= 0.45 * nf / sum);
        }
        let mut budget = n;
        for (&h, &s) in self.hot.iter().zip(&sizes) {
            self.nfiles[h as usize] = s as u32;
            budget -= s as u64;
        }
        let rest = nd as usize - self.hot.len();
        if rest == 0 {
            if let Some(&h) = self.hot.first() {
                self.nfiles[h as usize] += budget as u32;
            }
            return;
        }
        let mut w = vec![0f64; nd as usize];
        for d in 0..nd {
            if self.hot.contains(&d) {
                continue;
            }
            let x = (1.0 - rng.unit()).powf(-1.0 / 1.5) - 1.0;
            w[d as usize] = if self.nsub(d) > 0 { x * 0.3 } else { x };
        }
        let tot: f64 = w.iter().sum::<f64>().max(f64::MIN_POSITIVE);
        let mut assigned = 0;
        for (n, &x) in self.nfiles.iter_mut().zip(&w) {
            if x > 0.0 {
                let c = (x / tot * budget as f64) as u64;
                *n = c as u32;
                assigned += c;
            }
        }
        let mut left = budget - assigned.min(budget);
        while left > 0 {
            let d = rng.below(nd as u64) as u32;
            if !self.hot.contains(&d) {
                self.nfiles[d as usize] += 1;
                left -= 1;
            }
        }
    }

    /// churn: count the removed files (a hash per base file), then add as
    /// many, each to the directory of a base file drawn at random.
    fn plan_churn(&mut self, k: u64) {
        self.cut = (self.spec.churn * 18_446_744_073_709_551_616.0) as u64;
        let nd = self.ndirs() as usize;
        self.added = vec![0; nd];
        self.touched = vec![0; nd.div_ceil(64)];
        let mut removed = 0u64;
        let mut prefix = Vec::with_capacity(nd);
        let mut sum = 0u64;
        for d in 0..nd {
            let r = (0..self.nfiles[d])
                .filter(|&i| self.removed(d as u32, i))
                .count() as u64;
            if r > 0 {
                self.touched[d / 64] |= 1 << (d % 64);
            }
            removed += r;
            sum += self.nfiles[d] as u64;
            prefix.push(sum);
        }
        if sum == 0 {
            return;
        }
        let mut rng = Rng(k);
        for _ in 0..removed {
            let slot = rng.below(sum);
            let d = prefix.partition_point(|&p| p <= slot);
            self.added[d] += 1;
            self.touched[d / 64] |= 1 << (d % 64);
        }
    }

    pub fn ndirs(&self) -> u32 {
        self.parent.len() as u32
    }

    pub fn table_bytes(&self) -> usize {
        4 * (self.parent.len() + self.first_child.len() + self.nfiles.len() + self.added.len())
            + 8 * self.touched.len()
    }

    fn nsub(&self, d: u32) -> u32 {
        self.first_child[d as usize + 1] - self.first_child[d as usize]
    }

    fn depth(&self, d: u32) -> usize {
        self.level.partition_point(|&s| s <= d) - 1
    }

    fn nall(&self, d: u32) -> u32 {
        self.nfiles[d as usize] + self.added.get(d as usize).copied().unwrap_or(0)
    }

    fn is_touched(&self, d: u32) -> bool {
        self.touched
            .get(d as usize / 64)
            .is_some_and(|w| w >> (d % 64) & 1 == 1)
    }

    #[inline]
    fn removed(&self, d: u32, i: u32) -> bool {
        key(self.k_rm, file_ino(d, i)) < self.cut
    }

    /// Whether file i of d exists in this version, and how it differs from churn=0.
    #[inline]
    fn state(&self, d: u32, i: u32) -> Option<State> {
        let base = self.nfiles[d as usize];
        if i >= base {
            return (i < self.nall(d)).then_some(State::Added);
        }
        if self.cut == 0 {
            Some(State::Base)
        } else if self.removed(d, i) {
            None
        } else if key(self.k_ch, file_ino(d, i)) < self.cut {
            Some(State::Changed)
        } else {
            Some(State::Base)
        }
    }

    pub fn node(&self, ino: u64) -> Option<Node> {
        if ino < 1 << 32 {
            let d = ino.checked_sub(1)? as u32;
            return (d < self.ndirs()).then_some(Node::Dir(d));
        }
        let (d, i) = (((ino >> 32) - 1) as u32, ino as u32);
        (d < self.ndirs() && self.state(d, i).is_some()).then_some(Node::File(d, i))
    }

    fn dir(&self, d: u32) -> Dir {
        let mut r = Rng(key(self.k_dmeta, d as u64));
        let uid = r.zipf_uid();
        let gid = GIDS[r.below(5) as usize];
        let center = START as f64 + r.unit() * SPAN as f64;
        let spread = r.log_uniform(3600.0, 400.0 * 86400.0);
        let (dom, pdom) = if self.hot.contains(&d) {
            (HOT_EXTS[r.below(7) as usize], 0.995)
        } else {
            (r.ext(), [0.0, 0.5, 0.8, 0.95][r.below(4) as usize])
        };
        let (y, m, dd) = civil(center as i64 / 86400);
        let mut date = [0u8; 8];
        write!(&mut date[..], "{y:04}{m:02}{dd:02}").unwrap();
        let f = self.first_child[d as usize];
        Dir {
            d,
            uid,
            gid,
            center,
            spread,
            sub: f..self.first_child[d as usize + 1],
            nfiles: self.nfiles[d as usize],
            nall: self.nall(d),
            dom,
            pdom,
            stem: r.below(22) as usize,
            stem2: r.below(22) as usize,
            tmpl: r.below(5) as u8,
            width: [4, 5, 6, 8][r.below(4) as usize],
            date,
            kfile: key(self.k_files, d as u64),
        }
    }

    /// mktree's directory names: word_007, word7 or (depth >= 4) 2019-03-02_007,
    /// where 7 is the rank among siblings: unique within the parent.
    fn dir_name(&self, c: u32, out: &mut Vec<u8>) {
        out.clear();
        let k = c - self.first_child[self.parent[c as usize] as usize];
        let depth = self.depth(c);
        let words = DIR_WORDS[(depth - 1).min(4)];
        let mut r = Rng(key(self.k_dname, c as u64));
        let w = words[r.below(words.len() as u64) as usize];
        let x = r.unit();
        let _ = if depth >= 4 && x < 0.15 {
            let (y, m, d) = civil((START + r.below(SPAN as u64) as i64) / 86400);
            write!(out, "{y:04}-{m:02}-{d:02}_{k:03}")
        } else if x < 0.5 {
            write!(out, "{w}_{k:03}")
        } else {
            write!(out, "{w}{k}")
        };
    }

    /// The sub-directory of `dir` called `name`: the rank is the trailing digits.
    fn subdir(&self, dir: &Dir, name: &[u8]) -> Option<u32> {
        if name.contains(&b'.') {
            return None;
        }
        let nd = name.iter().rev().take_while(|c| c.is_ascii_digit()).count();
        if nd == 0 || nd > 10 {
            return None;
        }
        let k: u64 = std::str::from_utf8(&name[name.len() - nd..])
            .ok()?
            .parse()
            .ok()?;
        if k >= dir.sub.len() as u64 {
            return None;
        }
        let c = dir.sub.start + k as u32;
        let mut buf = Vec::with_capacity(32);
        self.dir_name(c, &mut buf);
        (buf == name).then_some(c)
    }

    #[inline]
    fn draw(&self, dir: &Dir, i: u32) -> Draw {
        let mut r = Rng(key(dir.kfile, i as u64));
        let ext = if r.unit() < dir.pdom {
            dir.dom
        } else {
            r.ext()
        };
        let special = ext == NOEXT && i < 8 && r.unit() < 0.5;
        Draw {
            rng: r,
            ext,
            special,
        }
    }

    /// mktree's file-name templates; the index is always in the name (except
    /// for the few special names of files 0..8), which is what LOOKUP parses.
    fn file_name(&self, dir: &Dir, i: u32, f: &Draw, out: &mut Vec<u8>) {
        out.clear();
        let (stem, e, w) = (STEMS[dir.stem], EXT_MIX[f.ext].0, dir.width);
        let _ = if f.special {
            out.write_all(SPECIAL_NOEXT[i as usize].as_bytes())
        } else {
            match dir.tmpl {
                0 => write!(out, "{stem}_{i:0w$}{e}"),
                1 => write!(out, "{stem}{i}{e}"),
                2 => {
                    out.extend_from_slice(stem.as_bytes());
                    out.push(b'_');
                    out.extend(STEMS[dir.stem2].bytes().map(|c| c.to_ascii_lowercase()));
                    write!(out, "_{i}{e}")
                }
                3 => {
                    out.extend_from_slice(stem.as_bytes());
                    out.push(b'_');
                    out.extend_from_slice(&dir.date);
                    write!(out, "_{i:04}{e}")
                }
                _ if !e.is_empty() => write!(out, "{stem}.{i:0w$}{e}"), // data.0001.h5
                _ => write!(out, "{stem}_{i:0w$}"),
            }
        };
        // as mktree: a file may not take a sub-directory's name
        if !out.contains(&b'.') && self.subdir(dir, out).is_some() {
            out.extend_from_slice(b"~f");
        }
    }

    /// The index a name of `dir` would have: undo the template, read the digits.
    fn parse_index(&self, dir: &Dir, name: &[u8]) -> Option<u32> {
        let name = name.strip_suffix(b"~f").unwrap_or(name);
        if let Some(i) = SPECIAL_NOEXT.iter().position(|s| s.as_bytes() == name) {
            return Some(i as u32);
        }
        let mut rest = name.strip_prefix(STEMS[dir.stem].as_bytes())?;
        match dir.tmpl {
            0 => rest = rest.strip_prefix(b"_")?,
            1 => {}
            2 => {
                let s2 = STEMS[dir.stem2].as_bytes();
                rest = rest.strip_prefix(b"_")?;
                rest = rest
                    .get(s2.len()..)
                    .filter(|_| rest[..s2.len()].eq_ignore_ascii_case(s2))?;
                rest = rest.strip_prefix(b"_")?;
            }
            3 => {
                rest = rest
                    .strip_prefix(b"_")?
                    .strip_prefix(&dir.date)?
                    .strip_prefix(b"_")?
            }
            _ => {
                rest = rest
                    .strip_prefix(b".")
                    .or_else(|| rest.strip_prefix(b"_"))?
            }
        }
        let nd = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if nd == 0 || nd > 10 {
            return None;
        }
        std::str::from_utf8(&rest[..nd]).ok()?.parse().ok()
    }

    /// A file's attributes: mktree's size, owner and time laws; churn moves
    /// changed and added files into the day after END.
    fn meta(&self, dir: &Dir, i: u32, mut f: Draw, st: State) -> Meta {
        let r = &mut f.rng;
        let (med, sig) = SIZE[EXT_MIX[f.ext].2 as usize];
        let mut size = if r.unit() < 0.02 {
            0
        } else {
            ((med * (r.gauss() * sig).exp()) as u64).min(MAX_SIZE)
        };
        let (uid, gid) = if r.unit() < 0.9 {
            (dir.uid, dir.gid)
        } else {
            (r.zipf_uid(), GIDS[r.below(5) as usize])
        };
        let mut mtime = r.time(dir.center, dir.spread);
        let u = r.unit();
        let mut atime = if u < 0.3 {
            mtime
        } else if u < 0.97 {
            (mtime + (r.expo(30.0 * 86400.0) * 1e9) as u64).min(END_NS)
        } else {
            mtime
                .saturating_sub((r.expo(300.0 * 86400.0) * 1e9) as u64)
                .max(START_NS)
        };
        // ctime: at the write (within 2 s) or at a later chmod/chown/rename
        let mut ctime = if r.unit() < 0.7 {
            mtime + r.below(2 * NS)
        } else {
            mtime + (r.expo(60.0 * 86400.0) * 1e9) as u64
        }
        .min(END_NS);
        if st != State::Base {
            let mut c = Rng(key(self.k_new, file_ino(dir.d, i)));
            mtime = END_NS + c.below(DAY_NS);
            (atime, ctime) = (mtime, mtime);
            if st == State::Changed {
                // grows (a log, a re-written result) or, at the cap, shrinks
                let delta = 1 + c.below(size / 4 + 4096);
                size = if size + delta <= MAX_SIZE {
                    size + delta
                } else {
                    size - delta
                };
            }
        }
        Meta {
            size,
            uid,
            gid,
            atime,
            mtime,
            ctime,
        }
    }

    fn file_attr(&self, dir: &Dir, i: u32, f: Draw, st: State) -> FileAttr {
        let m = self.meta(dir, i, f, st);
        FileAttr {
            ino: INodeNo(file_ino(dir.d, i)),
            size: m.size,
            blocks: 0, // sparse, as mktree's files
            atime: systime(m.atime),
            mtime: systime(m.mtime),
            ctime: systime(m.ctime),
            crtime: UNIX_EPOCH,
            kind: FileType::RegularFile,
            perm: 0o644,
            nlink: 1,
            uid: m.uid,
            gid: m.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn dir_attr(&self, d: u32) -> FileAttr {
        let dir = self.dir(d);
        let mtime = if self.is_touched(d) {
            END_NS + Rng(key(self.k_new, d as u64)).below(DAY_NS)
        } else if d == 0 {
            END_NS
        } else {
            Rng(key(self.k_dtime, d as u64)).time(dir.center, dir.spread)
        };
        FileAttr {
            ino: INodeNo(dir_ino(d)),
            size: 4096,
            blocks: 8,
            atime: systime(mtime),
            mtime: systime(mtime),
            ctime: systime(mtime),
            crtime: UNIX_EPOCH,
            kind: FileType::Directory,
            perm: 0o755,
            nlink: 2 + dir.sub.len() as u32, // so find's leaf optimisation stays right
            uid: dir.uid,
            gid: dir.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    pub fn attr(&self, node: &Node) -> FileAttr {
        match *node {
            Node::Dir(d) => self.dir_attr(d),
            Node::File(d, i) => {
                let dir = self.dir(d);
                let st = self.state(d, i).expect("node() checked it");
                self.file_attr(&dir, i, self.draw(&dir, i), st)
            }
        }
    }

    pub fn lookup(&self, p: u32, name: &[u8]) -> Option<FileAttr> {
        match name {
            b"." => return Some(self.dir_attr(p)),
            b".." => return Some(self.dir_attr(self.parent[p as usize])),
            _ => {}
        }
        let dir = self.dir(p);
        if let Some(c) = self.subdir(&dir, name) {
            return Some(self.dir_attr(c));
        }
        let i = self.parse_index(&dir, name)?;
        let st = self.state(p, i)?;
        let f = self.draw(&dir, i);
        let mut buf = Vec::with_capacity(64);
        self.file_name(&dir, i, &f, &mut buf);
        (buf == name).then(|| self.file_attr(&dir, i, f, st))
    }

    /// READDIR from cookie `offset`: slot 0 ".", 1 "..", then sub-directories,
    /// then files by index (removed ones skipped); an entry's cookie is its slot + 1.
    pub fn fill(&self, d: u32, offset: u64, reply: &mut ReplyDirectory) {
        let dir = self.dir(d);
        let nsub = dir.sub.len() as u64;
        let mut buf = Vec::with_capacity(64);
        let mut slot = offset;
        loop {
            let (ino, kind) = match slot {
                0 | 1 => {
                    buf.clear();
                    buf.extend_from_slice(&b".."[..slot as usize + 1]);
                    let p = if slot == 0 {
                        d
                    } else {
                        self.parent[d as usize]
                    };
                    (dir_ino(p), FileType::Directory)
                }
                s if s < 2 + nsub => {
                    let c = dir.sub.start + (s - 2) as u32;
                    self.dir_name(c, &mut buf);
                    (dir_ino(c), FileType::Directory)
                }
                s => {
                    let i = s - 2 - nsub;
                    if i >= dir.nall as u64 {
                        break;
                    }
                    let i = i as u32;
                    if i < dir.nfiles && self.cut != 0 && self.removed(d, i) {
                        slot += 1;
                        continue;
                    }
                    self.file_name(&dir, i, &self.draw(&dir, i), &mut buf);
                    (file_ino(d, i), FileType::RegularFile)
                }
            };
            if reply.add(INodeNo(ino), slot + 1, kind, OsStr::from_bytes(&buf)) {
                break; // buffer full; the kernel asks again from this cookie
            }
            slot += 1;
        }
    }

    fn path(&self, mut d: u32) -> String {
        let mut parts = Vec::new();
        let mut buf = Vec::new();
        while d != 0 {
            self.dir_name(d, &mut buf);
            parts.push(String::from_utf8_lossy(&buf).into_owned());
            d = self.parent[d as usize];
        }
        parts.iter().rev().fold(String::new(), |s, p| s + "/" + p)
    }

    /// Ground truth, mktree's summary keys where they exist: walks every
    /// generated file in-process (name, size, owner, mtime) on all cores.
    pub fn summary(&self, root: &str, table_s: f64) -> String {
        let t0 = Instant::now();
        let nd = self.ndirs();
        // work units of ~64 k files: runs of whole directories, or a slice of a big one
        const UNIT: u32 = 1 << 16;
        let mut units: Vec<(u32, u32, u32, u32)> = Vec::new(); // dirs d0..d1, files lo..hi
        let (mut d0, mut acc) = (0u32, 0u64);
        for d in 0..nd {
            let n = self.nall(d);
            if n > UNIT {
                if d0 < d {
                    units.push((d0, d, 0, u32::MAX));
                }
                units.extend(
                    (0..n.div_ceil(UNIT))
                        .map(|k| (d, d + 1, k * UNIT, (k * UNIT).saturating_add(UNIT))),
                );
                (d0, acc) = (d + 1, 0);
            } else {
                acc += n as u64;
                if acc >= UNIT as u64 {
                    units.push((d0, d + 1, 0, u32::MAX));
                    (d0, acc) = (d + 1, 0);
                }
            }
        }
        if d0 < nd {
            units.push((d0, nd, 0, u32::MAX));
        }

        #[derive(Default)]
        struct Acc {
            files: u64,
            bytes: u64,
            removed: u64,
            changed: u64,
            added: u64,
            ext: HashMap<Vec<u8>, u64>,
            uids: u64,
            gids: u64,
            mt: (u64, u64),
        }
        let live: Vec<AtomicU32> = (0..nd).map(|_| AtomicU32::new(0)).collect();
        let next = AtomicUsize::new(0);
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(32);
        let accs: Vec<Acc> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut a = Acc {
                            mt: (u64::MAX, 0),
                            ..Acc::default()
                        };
                        let (mut name, mut lower) = (Vec::with_capacity(64), Vec::new());
                        while let Some(&(d0, d1, lo, hi)) = units.get(next.fetch_add(1, Relaxed)) {
                            for d in d0..d1 {
                                let dir = self.dir(d);
                                let mut cnt = 0;
                                for i in lo..hi.min(dir.nall) {
                                    let Some(st) = self.state(d, i) else {
                                        a.removed += 1;
                                        continue;
                                    };
                                    let f = self.draw(&dir, i);
                                    self.file_name(&dir, i, &f, &mut name);
                                    lower.clear();
                                    lower.extend(
                                        ext_of(&name).iter().map(|c| c.to_ascii_lowercase()),
                                    );
                                    if let Some(c) = a.ext.get_mut(&lower) {
                                        *c += 1;
                                    } else {
                                        a.ext.insert(lower.clone(), 1);
                                    }
                                    let m = self.meta(&dir, i, f, st);
                                    a.bytes += m.size;
                                    a.uids |= 1 << UIDS.iter().position(|&u| u == m.uid).unwrap();
                                    a.gids |= 1 << GIDS.iter().position(|&g| g == m.gid).unwrap();
                                    a.mt = (a.mt.0.min(m.mtime), a.mt.1.max(m.mtime));
                                    match st {
                                        State::Changed => a.changed += 1,
                                        State::Added => a.added += 1,
                                        State::Base => {}
                                    }
                                    cnt += 1;
                                }
                                a.files += cnt as u64;
                                live[d as usize].fetch_add(cnt, Relaxed);
                            }
                        }
                        a
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut a = Acc {
            mt: (u64::MAX, 0),
            ..Acc::default()
        };
        for b in accs {
            a.files += b.files;
            a.bytes += b.bytes;
            a.removed += b.removed;
            a.changed += b.changed;
            a.added += b.added;
            a.uids |= b.uids;
            a.gids |= b.gids;
            a.mt = (a.mt.0.min(b.mt.0), a.mt.1.max(b.mt.1));
            for (k, v) in b.ext {
                *a.ext.entry(k).or_default() += v;
            }
        }
        let live: Vec<u32> = live.into_iter().map(|c| c.into_inner()).collect();
        let summary_s = t0.elapsed().as_secs_f64();

        // -- shape statistics, as mktree's
        let mut order: Vec<u32> = (0..nd).collect();
        order.sort_unstable_by_key(|&d| (std::cmp::Reverse(live[d as usize]), d));
        let fpd = |j: usize| live[order[j] as usize];
        let top10: Vec<String> = (0..10.min(nd as usize))
            .map(|j| fpd(j).to_string())
            .collect();
        let top10_sum: u64 = (0..10.min(nd as usize)).map(|j| fpd(j) as u64).sum();
        let mut hist = [0u64; 12]; // "0", "1-9", "10-99", ...
        for &c in &live {
            hist[if c == 0 { 0 } else { 1 + c.ilog10() as usize }] += 1;
        }
        let hist: Vec<String> = hist
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(b, n)| match b {
                0 => format!("\"0\": {n}"),
                b => format!(
                    "\"{}-{}\": {n}",
                    10u64.pow(b as u32 - 1),
                    10u64.pow(b as u32) - 1
                ),
            })
            .collect();
        let mut by_depth = [0u64; 9];
        for d in 1..nd {
            by_depth[self.depth(d)] += 1;
        }
        let max_depth = (0..9).rev().find(|&d| by_depth[d] > 0).unwrap_or(0);
        let by_depth: Vec<String> = (1..9)
            .filter(|&d| by_depth[d] > 0)
            .map(|d| format!("\"{d}\": {}", by_depth[d]))
            .collect();
        let mut ext: Vec<(Vec<u8>, u64)> = a.ext.into_iter().collect();
        ext.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
        let ext: Vec<String> = ext
            .iter()
            .map(|(k, v)| format!("{}: {v}", jstr(&String::from_utf8_lossy(k))))
            .collect();
        let hot: Vec<String> = self
            .hot
            .iter()
            .map(|&h| format!("[{}, {}]", jstr(&self.path(h)), live[h as usize]))
            .collect();
        let touched: u32 = self.touched.iter().map(|w| w.count_ones()).sum();
        let dirs = nd as u64 - 1;
        let f = a.files;
        format!(
            r#"{{
 "root": {root},
 "synthetic": {label},
 "seed": {seed},
 "requested_files": {req},
 "churn": {churn},
 "files": {f},
 "unique_file_inodes": {f},
 "dirs": {dirs},
 "total_apparent_bytes": {bytes},
 "total_apparent_bytes_unique_inodes": {bytes},
 "kinds": {{"regular": {f}, "dir": {dirs}, "symlink": 0, "fifo": 0, "socket": 0}},
 "ext_counts": {{{ext}}},
 "max_depth": {max_depth},
 "distinct_uids": {nu},
 "distinct_gids": {ng},
 "mtime_ns_range_main_tree": [{mt0}, {mt1}],
 "dirs_by_depth": {{{by_depth}}},
 "files_per_dir": {{"max": {max}, "top10": [{top10}], "median": {median}, "hist_dirs_by_file_count": {{{hist}}}, "share_of_files_in_top10_dirs": {share:.3}}},
 "largest_dir": [{lpath}, {max}],
 "hot_dirs": [{hot}],
 "removed": {removed},
 "added": {added},
 "changed": {changed},
 "dirs_with_new_mtime": {touched},
 "table_bytes": {tb},
 "notes": "synthetic (slowfs --synthetic): served from memory; files = regular-file entries (find -type f); dirs excludes the root (find -type d prints dirs + 1); sizes are sparse (blocks=0; reads return zeros); removed/added/changed are relative to churn=0 of the same files/dirs/seed; ext rule: splitext().lower()",
 "elapsed_s": {{"table": {table_s:.3}, "summary": {summary_s:.3}, "threads": {threads}}}
}}
"#,
            root = jstr(root),
            label = jstr(&self.spec.label()),
            seed = self.spec.seed,
            req = self.spec.files,
            churn = self.spec.churn,
            bytes = a.bytes,
            ext = ext.join(", "),
            nu = a.uids.count_ones(),
            ng = a.gids.count_ones(),
            mt0 = if f > 0 { a.mt.0 } else { 0 },
            mt1 = a.mt.1,
            by_depth = by_depth.join(", "),
            max = fpd(0),
            top10 = top10.join(", "),
            median = fpd(nd as usize / 2),
            hist = hist.join(", "),
            share = top10_sum as f64 / f.max(1) as f64,
            lpath = jstr(&self.path(order[0])),
            hot = hot.join(", "),
            removed = a.removed,
            added = a.added,
            changed = a.changed,
            tb = self.table_bytes(),
        )
    }
}

fn jstr(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o += "\\\"",
            '\\' => o += "\\\\",
            c if (c as u32) < 0x20 => o += &format!("\\u{:04x}", c as u32),
            c => o.push(c),
        }
    }
    o + "\""
}

// ------------------------------------------------------------- file system
/// The FUSE side: same request accounting and latency queue as SlowFs.
pub struct SynthFs {
    pub tree: Tree,
    pub attr_ttl: Duration,
    pub entry_ttl: Duration,
    pub sh: Shared,
}

impl SynthFs {
    fn later(&self, arrival: Instant, job: impl FnOnce() + Send + 'static) {
        self.sh.delay.reply_at(arrival, Box::new(job));
    }

    fn dir(&self, ino: INodeNo) -> Result<u32, Errno> {
        match self.tree.node(ino.0) {
            Some(Node::Dir(d)) => Ok(d),
            Some(Node::File(..)) => Err(Errno::ENOTDIR),
            None => Err(Errno::ESTALE),
        }
    }
}

impl fuser::Filesystem for SynthFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let ok = config
            .add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS)
            .is_ok();
        self.sh.parallel_dirops.store(ok, Relaxed);
        *self.sh.kernel_abi.lock().unwrap() = config.kernel_abi().to_string();
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let t = Instant::now();
        self.sh.stats.count(Op::Lookup);
        let res = self
            .dir(parent)
            .and_then(|p| self.tree.lookup(p, name.as_bytes()).ok_or(Errno::ENOENT));
        let (attr_ttl, entry_ttl) = (self.attr_ttl, self.entry_ttl);
        self.later(t, move || match res {
            Ok(a) => reply.entry_with_ttls(&attr_ttl, &entry_ttl, &a, Generation(0)),
            Err(e) => reply.error(e),
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let t = Instant::now();
        self.sh.stats.count(Op::Getattr);
        let res = self
            .tree
            .node(ino.0)
            .map(|n| self.tree.attr(&n))
            .ok_or(Errno::ESTALE);
        let ttl = self.attr_ttl;
        self.later(t, move || match res {
            Ok(a) => reply.attr(&ttl, &a),
            Err(e) => reply.error(e),
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let t = Instant::now();
        self.sh.stats.count(Op::Readlink);
        // no symlinks in a synthetic tree
        let e = if self.tree.node(ino.0).is_some() {
            Errno::EINVAL
        } else {
            Errno::ESTALE
        };
        self.later(t, move || reply.error(e));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let t = Instant::now();
        self.sh.stats.count(Op::Opendir);
        // stateless: READDIR regenerates entries from the cookie
        let res = self.dir(ino);
        self.later(t, move || match res {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let t = Instant::now();
        self.sh.stats.count(Op::Readdir);
        match self.dir(ino) {
            Ok(d) => {
                self.tree.fill(d, offset, &mut reply);
                self.later(t, move || reply.ok());
            }
            Err(e) => self.later(t, move || reply.error(e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.sh.stats.count(Op::Releasedir);
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.sh.stats.count(Op::Open);
        match self.tree.node(ino.0) {
            Some(Node::File(..)) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Some(Node::Dir(_)) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ESTALE),
        }
    }

    /// Data is zeros up to the file's size (the files are sparse and never written).
    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.sh.stats.count(Op::Read);
        match self.tree.node(ino.0) {
            Some(n @ Node::File(..)) => {
                let len = self
                    .tree
                    .attr(&n)
                    .size
                    .saturating_sub(offset)
                    .min(size as u64);
                reply.data(&vec![0u8; len as usize]);
            }
            Some(Node::Dir(_)) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ESTALE),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.sh.stats.count(Op::Release);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.sh.stats.count(Op::Statfs);
        let inodes = self.tree.spec.files + self.tree.ndirs() as u64;
        reply.statfs(0, 0, 0, inodes, 0, 4096, 255, 4096);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(spec: &str) -> Tree {
        Tree::new(Spec::parse(spec).unwrap())
    }

    /// Every generated name looks up to its own node; near misses do not.
    #[test]
    fn names_round_trip() {
        for spec in [
            "files=20000,seed=3",
            "files=3000,seed=1,churn=0.05",
            "files=50,dirs=0",
        ] {
            let t = tree(spec);
            let mut buf = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for d in 0..t.ndirs() {
                let dir = t.dir(d);
                for c in dir.sub.clone() {
                    t.dir_name(c, &mut buf);
                    assert!(
                        seen.insert((d, buf.clone())),
                        "duplicate {:?}",
                        String::from_utf8_lossy(&buf)
                    );
                    assert_eq!(t.lookup(d, &buf).unwrap().ino.0, dir_ino(c));
                }
                for i in 0..dir.nall {
                    if t.state(d, i).is_none() {
                        continue;
                    }
                    t.file_name(&dir, i, &t.draw(&dir, i), &mut buf);
                    assert!(
                        seen.insert((d, buf.clone())),
                        "duplicate {:?}",
                        String::from_utf8_lossy(&buf)
                    );
                    let a = t.lookup(d, &buf).unwrap();
                    assert_eq!(a.ino.0, file_ino(d, i));
                    let mut b = buf.clone();
                    b.push(b'x');
                    assert!(t.lookup(d, &b).is_none());
                    b.pop();
                    b.insert(0, b'0');
                    assert!(t.lookup(d, &b).is_none());
                }
            }
        }
    }

    #[test]
    fn shape() {
        let t = tree("files=1000000,seed=42");
        let total: u64 = t.nfiles.iter().map(|&n| n as u64).sum();
        assert_eq!(total, 1_000_000);
        assert_eq!(t.ndirs() as u64 - 1, (1e6f64 / 31.4).round() as u64);
        let max = *t.nfiles.iter().max().unwrap() as u64;
        assert!((62_500..=125_000).contains(&max), "{max}");
        assert_eq!(ext_of(b"a.tar.gz"), b".gz");
        assert_eq!(ext_of(b".gitignore"), b"");
        assert_eq!(ext_of(b"core.12345"), b".12345");
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(END / 86400), (2026, 1, 1));
    }
}
