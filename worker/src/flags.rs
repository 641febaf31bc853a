//! The command line: every flag of every command, parsed by clap. What the operator passes is
//! spelled by the contract crate (`scanjob_contract::args`); the tests below parse those lines
//! with this parser.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use scanjob_contract::args::Budget;
use scanjob_contract::exit::TERMINATION_LOG_ENV;
use scanjob_worker::Error;
use scanjob_worker::engine::EngineOptions;
use scanjob_worker::insights::InsightOptions;
use scanjob_worker::merge::MergeOptions;
use scanjob_worker::report::owners::OwnerNames;
use scanjob_worker::store::layout::WalkSettings;

/// Scan a file system into a Parquet table of contents.
#[derive(Parser)]
#[command(name = "scanjob", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Print one machine-readable JSON summary on stdout instead of progress and text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Where to write the result as one line of JSON for Kubernetes (the container's
    /// terminationMessagePath), success or failure.
    #[arg(long, global = true, env = TERMINATION_LOG_ENV)]
    pub termination_log: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub struct WalkArgs {
    /// Prune entries whose name matches this glob (repeatable), e.g. `.snapshot`.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Do not descend into directories on other file systems.
    #[arg(long)]
    pub one_file_system: bool,
    /// Path level (1 = first below the root) whose name fills the `project` column; 0 for none.
    #[arg(long, default_value_t = 1)]
    pub project_level: usize,
    /// The uid an `nfs://` root is read as (AUTH_SYS; the export's squash rules apply)
    /// [default: 65534, nobody].
    #[arg(long, value_name = "UID")]
    pub nfs_uid: Option<u32>,
    /// The gid an `nfs://` root is read as [default: 65534, nogroup].
    #[arg(long, value_name = "GID")]
    pub nfs_gid: Option<u32>,
    /// Connect to an `nfs://` root from a reserved port (below 1024), for an export that
    /// insists (`secure`, ganesha's `PrivilegedPort`). Needs CAP_NET_BIND_SERVICE.
    #[arg(long)]
    pub nfs_reserved_port: bool,
    /// Another address of an `nfs://` root's server (repeatable), e.g. each node of a cluster
    /// that serves one namespace: the client's connections are spread over the root's address
    /// and these, at least one each. MOUNT goes to the root's.
    #[arg(long = "nfs-address", value_name = "ADDR")]
    pub nfs_addresses: Vec<String>,
}

impl WalkArgs {
    pub fn settings(self) -> WalkSettings {
        WalkSettings {
            one_file_system: self.one_file_system,
            exclude: self.exclude,
            project_level: self.project_level,
            nfs_uid: self.nfs_uid,
            nfs_gid: self.nfs_gid,
            nfs_reserved_port: self.nfs_reserved_port,
            nfs_addresses: self.nfs_addresses,
        }
    }
}

/// Politeness towards a shared file server (see the `politeness` module).
#[derive(Args, Clone, Copy)]
pub struct PolitenessArgs {
    /// At most this many file-system calls per second, shared by all threads; at least 1. A
    /// call is what a server sees as one request: a stat, a directory read (getdents64) or a
    /// file read is one, a directory open is three (lookup, open and close).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_ops_per_second: Option<u32>,
    /// Halve the calls in flight while their p99 latency is above MS milliseconds, and add one
    /// back per second it is not (AIMD); at least 1.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u32).range(1..))]
    pub latency_guard_ms: Option<u32>,
}

impl PolitenessArgs {
    pub fn budget(self) -> Budget {
        Budget {
            max_ops_per_second: self.max_ops_per_second,
            latency_guard_ms: self.latency_guard_ms,
        }
    }
}

/// For a shard on a file system that may turn slow or hang.
#[derive(Args, Clone, Copy)]
pub struct WatchdogArgs {
    /// Give up after this many seconds: exit 1 (retryable) with a `deadline_exceeded` report,
    /// even while calls hang in the kernel. Set it below the pod's activeDeadlineSeconds.
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    pub deadline_seconds: Option<u64>,
    /// Print a progress line to stderr every this many seconds; 0 for none.
    #[arg(long, value_name = "S", default_value_t = 30)]
    pub progress_seconds: u64,
}

/// What `merge` derives for each snapshot and how many snapshots it keeps.
#[derive(Args, Clone)]
pub struct MergeArgs {
    /// After publishing, remove all but the K newest snapshots and their runs' files (never
    /// the one latest.json names); at least 1. Default: keep everything.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_snapshots: Option<u32>,
    /// Do not publish a night whose file count or bytes fell by more than P percent against
    /// the previous snapshot (an unmounted volume, a mount lost mid-scan); 100 publishes any
    /// night.
    #[arg(long, value_name = "P", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_shrink_percent: u32,
    /// Files (and directory trees) smaller than this are not duplicate candidates.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub duplicate_min_size: u64,
    /// Directories down to this depth get a row of recursive totals in rollup_by_directory.
    #[arg(long, value_name = "D", default_value_t = 3)]
    pub rollup_depth: u32,
    /// Memory the merge's queries may hold: sorts and aggregates spill to disk beyond it, and
    /// the big joins run in as many passes over the rows as it takes for one to fit half of it
    /// [default: half the memory limit of the process's cgroup (a pod's limit), or 2 GiB
    /// without one].
    #[arg(long, value_name = "BYTES")]
    pub merge_memory: Option<usize>,
    /// Rows per pass of the big joins [default: as many as half of --merge-memory holds, at
    /// 256 bytes a row].
    #[arg(long, value_name = "ROWS", value_parser = clap::value_parser!(u64).range(1..))]
    pub merge_join_rows: Option<u64>,
    /// A passwd-format file (`name:x:uid:gid:…`, e.g. the file server's /etc/passwd): the
    /// report shows owners as `name (uid)`. Malformed lines are skipped with a warning.
    #[arg(long, value_name = "FILE")]
    pub passwd: Option<PathBuf>,
    /// A group-format file (`name:x:gid:members`): the report shows groups as `name (gid)`.
    #[arg(long, value_name = "FILE")]
    pub group: Option<PathBuf>,
}

impl MergeArgs {
    /// The merge's options; reads the `--passwd` and `--group` files, so that one that
    /// cannot be read fails the command before any work.
    pub fn options(self, max_missing_shards: u32) -> Result<MergeOptions, Error> {
        let owner_names = OwnerNames::load(self.passwd.as_deref(), self.group.as_deref())?;
        Ok(MergeOptions {
            max_missing_shards,
            keep_snapshots: self.keep_snapshots,
            max_shrink_percent: Some(self.max_shrink_percent),
            insights: InsightOptions {
                rollup_depth: self.rollup_depth,
                duplicate_min_size: self.duplicate_min_size,
                engine: EngineOptions {
                    memory_limit_bytes: self.merge_memory.unwrap_or_else(|| {
                        EngineOptions::memory_limit_for(scanjob_worker::cgroup::memory_limit())
                    }),
                    join_pass_rows: self.merge_join_rows,
                    ..EngineOptions::default()
                },
                owner_names,
            },
        })
    }
}

/// At least 16 walker threads, more on bigger machines. Measured (docs/latency.md, "The
/// default thread count"): on a file system with 1 ms per metadata request, 16 threads scan 7×
/// faster than 2; on a warm local disk they cost 8 % more wall time than 2 and ~80 MiB more
/// memory.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(16, |n| n.get().max(16))
}

#[derive(Subcommand)]
pub enum Command {
    /// Split the tree into balanced shards and write `<out>/runs/<run>/plan.json`.
    Plan(PlanArgs),
    /// Scan one shard of a plan into `<out>/runs/<run>/shards/<index>/`.
    Scan(ScanArgs),
    /// Check every shard of a run and publish it as the latest snapshot.
    Merge(MergeCommandArgs),
    /// Print the report of the latest (or a named) snapshot: totals, top directories,
    /// extensions, owners and projects, age, growth, duplicates.
    Report(ReportArgs),
    /// Read one partition of a run's duplicate candidates (sampled blocks, then whole files)
    /// within a byte budget, for the merge to confirm duplicates by content.
    Hash(HashArgs),
    /// Run one partition of a merge's big joins (first_seen, the diff), so that several pods
    /// share them; the merge then finds every partition's output and does the rest.
    Join(JoinCommandArgs),
    /// Plan, scan and merge on this machine: the whole job without Kubernetes.
    Run(RunArgs),
}

// The flags of `scanjob join`.
#[derive(Args)]
pub struct JoinCommandArgs {
    /// `<out>/runs/<run>`.
    #[arg(long, value_name = "URL")]
    pub run: String,
    /// Partition index; an Indexed Job's pods get it from JOB_COMPLETION_INDEX.
    #[arg(long, env = "JOB_COMPLETION_INDEX")]
    pub index: u32,
    /// Partitions in all (one pod each).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// As the merge's: shards that may lack a _SUCCESS.json.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_missing_shards: u32,
    #[command(flatten)]
    pub merge: MergeArgs,
}

// The flags of `scanjob hash`.
#[derive(Args)]
pub struct HashArgs {
    #[arg(long, value_name = "URL")]
    pub plan: String,
    /// Partition index; an Indexed Job's pods get it from JOB_COMPLETION_INDEX.
    #[arg(long, env = "JOB_COMPLETION_INDEX", default_value_t = 0)]
    pub index: u32,
    /// Partitions in all (one pod each); every candidate group is read by one of them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// Bytes this partition may read, sampled blocks and whole files together.
    #[arg(long, value_name = "BYTES")]
    pub max_bytes: u64,
    /// Files smaller than this are not duplicate candidates (as the merge's).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub duplicate_min_size: u64,
    #[arg(long, default_value_t = default_threads())]
    pub threads: usize,
    /// Where the planned root is mounted, if not at the planned path.
    #[arg(long)]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub politeness: PolitenessArgs,
}

// The flags of `scanjob plan`.
#[derive(Args)]
pub struct PlanArgs {
    pub root: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub shards: u32,
    #[arg(long, value_name = "URL")]
    pub out: String,
    /// Balance by the latest snapshot at this URL (usually the same as --out).
    #[arg(long, value_name = "URL")]
    pub previous: Option<String>,
    /// Run id; default: the current UTC time, e.g. 20261123t010000z.
    #[arg(long)]
    pub run: Option<String>,
    #[command(flatten)]
    pub walk: WalkArgs,
    /// Directories a first run's top-level count lists at once (as the scan's threads)
    #[arg(long, default_value_t = default_threads())]
    pub threads: usize,
    /// The scan's budget and latency guard, which the top-level count keeps too.
    #[command(flatten)]
    pub politeness: PolitenessArgs,
}

// The flags of `scanjob scan`.
#[derive(Args)]
pub struct ScanArgs {
    #[arg(long, value_name = "URL")]
    pub plan: String,
    /// Shard index; an Indexed Job's pods get it from JOB_COMPLETION_INDEX.
    #[arg(long, env = "JOB_COMPLETION_INDEX")]
    pub index: u32,
    #[arg(long, default_value_t = default_threads())]
    pub threads: usize,
    /// Where the planned root is mounted, if not at the planned path.
    #[arg(long)]
    pub root: Option<PathBuf>,
    #[arg(long, default_value_t = 256 << 20, value_name = "BYTES")]
    pub part_size: usize,
    #[command(flatten)]
    pub politeness: PolitenessArgs,
    #[command(flatten)]
    pub watchdog: WatchdogArgs,
}

// The flags of `scanjob merge`.
#[derive(Args)]
pub struct MergeCommandArgs {
    /// `<out>/runs/<run>`.
    #[arg(long, value_name = "URL")]
    pub run: String,
    /// Publish anyway when at most this many shards have no _SUCCESS.json (and at least
    /// one has): the manifest's `missing_shards` names them.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_missing_shards: u32,
    #[command(flatten)]
    pub merge: MergeArgs,
}

// The flags of `scanjob report`.
#[derive(Args)]
pub struct ReportArgs {
    /// The output location (what `--out` was).
    pub url: String,
    /// A snapshot's run id; default: the one latest.json names.
    #[arg(long)]
    pub run: Option<String>,
}

// The flags of `scanjob run`.
#[derive(Args)]
pub struct RunArgs {
    pub root: PathBuf,
    #[arg(long, value_name = "URL", default_value = "./toc")]
    pub out: String,
    #[arg(long, default_value_t = 1)]
    pub shards: u32,
    #[arg(long, default_value_t = default_threads())]
    pub threads: usize,
    #[arg(long, default_value_t = 256 << 20, value_name = "BYTES")]
    pub part_size: usize,
    #[arg(long)]
    pub run: Option<String>,
    #[command(flatten)]
    pub walk: WalkArgs,
    #[command(flatten)]
    pub politeness: PolitenessArgs,
    #[command(flatten)]
    pub merge: MergeArgs,
    /// Split the merge's big joins into this many partitions, run one after another here (as
    /// that many merge pods would share them; `scanjob join`).
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub merge_pods: u32,
    /// Confirm duplicate candidates by content, reading at most this many bytes (sampled
    /// blocks, then whole files; `scanjob hash`); 0 (the default) reads no file.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub hash_bytes: u64,
}

#[cfg(test)]
mod tests {
    //! The command lines the operator writes (the contract crate's `args`) parse with this
    //! binary's own parser into the values they were made from.

    use scanjob_contract::args::{
        HashArgs as HashLine, JoinArgs as JoinLine, MergeArgs as MergeLine, PlanArgs as PlanLine,
        ScanArgs as ScanLine, WalkArgs as WalkLine,
    };

    use super::*;

    fn parse(args: Vec<String>) -> Command {
        let line = std::iter::once("scanjob".to_string()).chain(args);
        match Cli::try_parse_from(line) {
            Ok(cli) => cli.command,
            Err(e) => panic!("the worker rejects the operator's command line: {e}"),
        }
    }

    #[test]
    fn the_operators_plan_line_parses_into_its_values() {
        let line = PlanLine {
            root: "/scan/projects".into(),
            shards: 12,
            out: "s3://toc/isilon".into(),
            previous: Some("s3://toc/isilon".into()),
            run: Some("20261123t000000z".into()),
            walk: WalkLine {
                exclude: vec![".snapshot".into(), "*.tmp".into()],
                one_file_system: true,
                project_level: 2,
                nfs_uid: Some(1000),
                nfs_gid: Some(100),
                nfs_reserved_port: true,
                nfs_addresses: vec!["10.0.0.2".into(), "filer-b".into()],
            },
            threads: Some(24),
            budget: Budget {
                max_ops_per_second: Some(3000),
                latency_guard_ms: Some(40),
            },
        };
        let Command::Plan(PlanArgs {
            root,
            shards,
            out,
            previous,
            run,
            walk,
            threads,
            politeness,
        }) = parse(line.to_args())
        else {
            panic!("not a plan command");
        };
        assert_eq!(root, PathBuf::from(&line.root));
        assert_eq!(
            (shards, out, previous, run),
            (line.shards, line.out, line.previous, line.run)
        );
        assert_eq!(
            (
                walk.exclude,
                walk.one_file_system,
                walk.project_level,
                walk.nfs_uid,
                walk.nfs_gid,
                walk.nfs_reserved_port,
                walk.nfs_addresses
            ),
            (
                line.walk.exclude,
                line.walk.one_file_system,
                line.walk.project_level,
                line.walk.nfs_uid,
                line.walk.nfs_gid,
                line.walk.nfs_reserved_port,
                line.walk.nfs_addresses
            )
        );
        assert_eq!(
            (Some(threads), politeness.budget()),
            (line.threads, line.budget)
        );
    }

    #[test]
    fn the_operators_scan_line_parses_into_its_values() {
        let line = ScanLine {
            plan: "s3://toc/isilon/runs/20261123t000000z/plan.json".into(),
            threads: Some(32),
            budget: Budget {
                max_ops_per_second: Some(2500),
                latency_guard_ms: Some(50),
            },
            deadline_seconds: Some(7140),
        };
        // An Indexed Job's pod gets its index from the environment; here it is a flag.
        let mut args = line.to_args();
        args.extend(["--index".into(), "4".into()]);
        let Command::Scan(ScanArgs {
            plan,
            index,
            threads,
            politeness,
            watchdog,
            ..
        }) = parse(args)
        else {
            panic!("not a scan command");
        };
        assert_eq!((plan, index, Some(threads)), (line.plan, 4, line.threads));
        assert_eq!(politeness.budget(), line.budget);
        assert_eq!(watchdog.deadline_seconds, line.deadline_seconds);
    }

    #[test]
    fn the_operators_merge_line_parses_into_its_values() {
        let line = MergeLine {
            run: "s3://toc/isilon/runs/20261123t000000z".into(),
            max_missing_shards: 2,
            keep_snapshots: Some(7),
            max_shrink_percent: Some(30),
            duplicate_min_size: Some(4096),
            passwd: Some("/etc/scanjob/owner-names/passwd".into()),
            group: Some("/etc/scanjob/owner-names/group".into()),
        };
        let Command::Merge(MergeCommandArgs {
            run,
            max_missing_shards,
            merge,
        }) = parse(line.to_args())
        else {
            panic!("not a merge command");
        };
        assert_eq!(
            (
                run,
                max_missing_shards,
                merge.keep_snapshots,
                Some(merge.max_shrink_percent),
                Some(merge.duplicate_min_size),
                merge.passwd.map(|p| p.display().to_string()),
                merge.group.map(|p| p.display().to_string())
            ),
            (
                line.run,
                line.max_missing_shards,
                line.keep_snapshots,
                line.max_shrink_percent,
                line.duplicate_min_size,
                line.passwd,
                line.group
            )
        );
    }

    #[test]
    fn the_operators_hash_line_parses_into_its_values() {
        let line = HashLine {
            plan: "s3://toc/isilon/runs/20261123t000000z/plan.json".into(),
            count: 4,
            max_bytes: 25 << 30,
            duplicate_min_size: Some(1 << 20),
            threads: Some(8),
            budget: Budget {
                max_ops_per_second: Some(250),
                latency_guard_ms: Some(40),
            },
        };
        let mut args = line.to_args();
        args.extend(["--index".into(), "3".into()]);
        let Command::Hash(h) = parse(args) else {
            panic!("not a hash command");
        };
        assert_eq!(
            (
                h.plan,
                h.index,
                h.count,
                h.max_bytes,
                Some(h.duplicate_min_size),
                Some(h.threads)
            ),
            (
                line.plan,
                3,
                line.count,
                line.max_bytes,
                line.duplicate_min_size,
                line.threads
            )
        );
        assert_eq!(h.politeness.budget(), line.budget);
    }

    #[test]
    fn the_operators_join_line_parses_into_its_values() {
        let line = JoinLine {
            run: "s3://toc/isilon/runs/20261123t000000z".into(),
            count: 3,
            max_missing_shards: 2,
        };
        // An Indexed Job's pod gets its index from the environment; here it is a flag.
        let mut args = line.to_args();
        args.extend(["--index".into(), "2".into()]);
        let Command::Join(JoinCommandArgs {
            run,
            index,
            count,
            max_missing_shards,
            ..
        }) = parse(args)
        else {
            panic!("not a join command");
        };
        assert_eq!(
            (run, index, count, max_missing_shards),
            (line.run, 2, line.count, line.max_missing_shards)
        );
    }

    #[test]
    fn the_least_the_operator_passes_parses_too() {
        let scan = ScanLine {
            plan: "file:///toc/runs/r/plan.json".into(),
            ..ScanLine::default()
        };
        let mut args = scan.to_args();
        args.extend(["--index".into(), "0".into()]);
        assert!(matches!(parse(args), Command::Scan(_)));
        let merge = MergeLine {
            run: "file:///toc/runs/r".into(),
            ..MergeLine::default()
        };
        assert!(matches!(parse(merge.to_args()), Command::Merge(_)));
    }
}
