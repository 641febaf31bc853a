//! The worker's command lines as the operator writes them into its Jobs. Each struct is one
//! `scanjob` subcommand with the flags the operator may pass; [`PlanArgs::to_args`] and its
//! siblings spell them. The worker's tests parse every spelling with its real parser.

/// Flags shared by every command that walks the tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalkArgs {
    /// `--exclude GLOB`, repeated.
    pub exclude: Vec<String>,
    /// `--one-file-system`.
    pub one_file_system: bool,
    /// `--project-level N`.
    pub project_level: usize,
    /// `--nfs-uid UID`: the AUTH_SYS uid an `nfs://` root is read as.
    pub nfs_uid: Option<u32>,
    /// `--nfs-gid GID`: the AUTH_SYS gid an `nfs://` root is read as.
    pub nfs_gid: Option<u32>,
    /// `--nfs-reserved-port`: connect to an `nfs://` root from a port below 1024.
    pub nfs_reserved_port: bool,
    /// `--nfs-address ADDR`, repeated: further addresses of an `nfs://` root's server.
    pub nfs_addresses: Vec<String>,
}

/// The operations budget of every command that touches the scanned file system: at most
/// `max_ops_per_second` calls per second (a directory open counts as the three requests a
/// server sees, a directory read and a stat as one each), and the latency guard that halves
/// the calls in flight while their p99 is above `latency_guard_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    pub max_ops_per_second: Option<u32>,
    pub latency_guard_ms: Option<u32>,
}

impl Budget {
    fn push_args(&self, args: &mut Vec<String>) {
        push_opt(args, "--max-ops-per-second", self.max_ops_per_second);
        push_opt(args, "--latency-guard-ms", self.latency_guard_ms);
    }
}

/// `scanjob plan ROOT --shards N --out URL [--previous URL] [--run RUN] …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanArgs {
    pub root: String,
    pub shards: u32,
    pub out: String,
    pub previous: Option<String>,
    pub run: Option<String>,
    pub walk: WalkArgs,
    /// A first run's top-level count: directories listed at once, and its budget.
    pub threads: Option<usize>,
    pub budget: Budget,
}

/// `scanjob scan --plan URL …`; the shard index comes from `JOB_COMPLETION_INDEX`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanArgs {
    /// The full URL of `runs/<run>/plan.json`.
    pub plan: String,
    pub threads: Option<usize>,
    pub budget: Budget,
    pub deadline_seconds: Option<u64>,
}

/// `scanjob merge --run URL --max-missing-shards N [--keep-snapshots K]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeArgs {
    /// The full URL of `runs/<run>`.
    pub run: String,
    pub max_missing_shards: u32,
    pub keep_snapshots: Option<u32>,
    /// Refuse to publish a night whose files or bytes fell by more than this many percent
    /// against the previous snapshot; 100 publishes any night.
    pub max_shrink_percent: Option<u32>,
    /// Files smaller than this are not duplicate candidates (as the hash step's).
    pub duplicate_min_size: Option<u64>,
    /// passwd- and group-format files naming the owners and groups in the report.
    pub passwd: Option<String>,
    pub group: Option<String>,
}

/// `scanjob hash --plan URL --count N --max-bytes B …`; the partition index comes from
/// `JOB_COMPLETION_INDEX`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashArgs {
    /// The full URL of `runs/<run>/plan.json`.
    pub plan: String,
    pub count: u32,
    /// Bytes each partition may read.
    pub max_bytes: u64,
    pub duplicate_min_size: Option<u64>,
    pub threads: Option<usize>,
    pub budget: Budget,
}

/// `scanjob join --run URL --count K --max-missing-shards N`; the partition index comes from
/// `JOB_COMPLETION_INDEX`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinArgs {
    /// The full URL of `runs/<run>`.
    pub run: String,
    pub count: u32,
    pub max_missing_shards: u32,
}

impl JoinArgs {
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "join".into(),
            "--run".into(),
            self.run.clone(),
            "--count".into(),
            self.count.to_string(),
            "--max-missing-shards".into(),
            self.max_missing_shards.to_string(),
        ]
    }
}

/// Any new value of this ScanJob annotation lets the next run publish however much the store
/// shrank (the merge's shrink guard is off for that one run).
pub const ALLOW_SHRINK_ANNOTATION: &str = "scanjob.dev/allow-shrink";

/// Appends `flag value` when `value` is set.
fn push_opt(args: &mut Vec<String>, flag: &str, value: Option<impl ToString>) {
    if let Some(value) = value {
        args.extend([flag.to_owned(), value.to_string()]);
    }
}

impl PlanArgs {
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec![
            "plan".into(),
            self.root.clone(),
            "--shards".into(),
            self.shards.to_string(),
            "--out".into(),
            self.out.clone(),
        ];
        push_opt(&mut a, "--previous", self.previous.as_ref());
        push_opt(&mut a, "--run", self.run.as_ref());
        a.extend([
            "--project-level".into(),
            self.walk.project_level.to_string(),
        ]);
        for glob in &self.walk.exclude {
            a.extend(["--exclude".into(), glob.clone()]);
        }
        if self.walk.one_file_system {
            a.push("--one-file-system".into());
        }
        push_opt(&mut a, "--nfs-uid", self.walk.nfs_uid);
        push_opt(&mut a, "--nfs-gid", self.walk.nfs_gid);
        if self.walk.nfs_reserved_port {
            a.push("--nfs-reserved-port".into());
        }
        for address in &self.walk.nfs_addresses {
            a.extend(["--nfs-address".into(), address.clone()]);
        }
        push_opt(&mut a, "--threads", self.threads);
        self.budget.push_args(&mut a);
        a
    }
}

impl ScanArgs {
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec!["scan".into(), "--plan".into(), self.plan.clone()];
        push_opt(&mut a, "--threads", self.threads);
        self.budget.push_args(&mut a);
        push_opt(&mut a, "--deadline-seconds", self.deadline_seconds);
        a
    }
}

impl HashArgs {
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec![
            "hash".into(),
            "--plan".into(),
            self.plan.clone(),
            "--count".into(),
            self.count.to_string(),
            "--max-bytes".into(),
            self.max_bytes.to_string(),
        ];
        push_opt(&mut a, "--duplicate-min-size", self.duplicate_min_size);
        push_opt(&mut a, "--threads", self.threads);
        self.budget.push_args(&mut a);
        a
    }
}

impl MergeArgs {
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec![
            "merge".into(),
            "--run".into(),
            self.run.clone(),
            "--max-missing-shards".into(),
            self.max_missing_shards.to_string(),
        ];
        push_opt(&mut a, "--keep-snapshots", self.keep_snapshots);
        push_opt(&mut a, "--max-shrink-percent", self.max_shrink_percent);
        push_opt(&mut a, "--duplicate-min-size", self.duplicate_min_size);
        push_opt(&mut a, "--passwd", self.passwd.as_ref());
        push_opt(&mut a, "--group", self.group.as_ref());
        a
    }
}
